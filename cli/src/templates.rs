//! `tessera templates`: every registered template, its parameters and space size.

use tessera_dsl::Template;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let all: Vec<&'static dyn Template> = tessera_library::templates();
    if args.json {
        let rows: Vec<serde_json::Value> = all
            .iter()
            .map(|t| {
                let s = t.space();
                serde_json::json!({
                    "name": t.name(),
                    "op": t.op().name(),
                    "version": t.source_hash(),
                    "about": t.about(),
                    "space_size": s.len(),
                    "raw_size": s.raw_len(),
                    "params": s.params.iter().map(|p| serde_json::json!({"name": p.name, "values": p.values})).collect::<Vec<_>>(),
                    "constraints": s.constraints.iter().map(|c| c.text).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for t in all {
        let s = t.space();
        println!("{}  ({}, version {})", t.name(), t.op(), t.source_hash());
        if !t.about().is_empty() {
            println!("  {}", t.about());
        }
        println!(
            "  space: {} configs ({} before constraints)",
            s.len(),
            s.raw_len()
        );
        for p in &s.params {
            let values: Vec<String> = p.values.iter().map(i64::to_string).collect();
            println!("  {:<10} {}", p.name, values.join(", "));
        }
        for c in &s.constraints {
            println!("  where {}", c.text);
        }
        let d = t.dtypes();
        let names =
            |ds: &[tessera_dsl::DType]| ds.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ");
        println!(
            "  dtypes: input {}; acc {}; output {}",
            names(d.inputs),
            d.acc,
            names(d.outputs)
        );
    }
    Ok(())
}
