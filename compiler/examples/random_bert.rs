//! Write a random BERT checkpoint (`config.json` + `model.safetensors`) to try `tessera compile`
//! without downloading a model:
//!
//! ```text
//! cargo run -p tessera-compiler --example random_bert -- /tmp/tiny-bert
//! cargo run -p tessera-compiler --example random_bert -- /tmp/bert-base base
//! ```

use tessera_compiler::fixture::Fixture;
use tessera_dsl::DType;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: random_bert DIR [base]");
        std::process::exit(2);
    };
    let mut f = Fixture::tiny();
    if args.next().as_deref() == Some("base") {
        // BERT-base geometry, stored as f16 (as a converted checkpoint would be)
        let c = &mut f.config;
        (c.layers, c.hidden, c.heads, c.head_dim, c.intermediate) = (12, 768, 12, 64, 3072);
        (c.vocab, c.max_positions) = (30522, 512);
        f.dtype = DType::F16;
    }
    f.write(std::path::Path::new(&dir))?;
    println!("wrote {dir}: {:?}", f.config);
    Ok(())
}
