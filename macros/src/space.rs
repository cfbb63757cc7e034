//! The parameter space at compile time: the cartesian product of the values, filtered by the
//! constraints in order, exactly as `tessera_dsl::ParamSpace::enumerate` filters it at run
//! time (a constraint is only evaluated on points that passed the ones before it).

use crate::template::{point_text, Constraint, Param};
use proc_macro2::TokenStream;

/// Most raw points the macro evaluates; larger spaces are a compile error.
pub const MAX_POINTS: u64 = 1_000_000;

/// Every point that satisfies all constraints, in `ParamSpace::enumerate` order.
pub fn satisfying(
    params: &[Param],
    constraints: &[Constraint],
    head: &TokenStream,
) -> syn::Result<Vec<Vec<i64>>> {
    let raw = params
        .iter()
        .fold(1u64, |n, p| n.saturating_mul(p.values.len() as u64));
    if raw > MAX_POINTS {
        let sizes: Vec<String> = params.iter().map(|p| p.values.len().to_string()).collect();
        return Err(syn::Error::new_spanned(
            head,
            format!(
                "the parameter space has {raw} raw points ({}); the macro checks each at compile time \
                 and allows at most {MAX_POINTS}: trim the value lists or split the template",
                sizes.join(" × ")
            ),
        ));
    }
    // passed[i]: points that satisfy constraints 0..=i.
    let mut passed = vec![0u64; constraints.len()];
    let mut out = Vec::new();
    let mut idx = vec![0usize; params.len()];
    let mut point: Vec<i64> = params.iter().map(|p| p.values[0]).collect();
    loop {
        let mut ok = true;
        for (i, c) in constraints.iter().enumerate() {
            match c.node.eval(&point) {
                Ok(0) => {
                    ok = false;
                    break;
                }
                Ok(_) => passed[i] += 1,
                Err(f) => {
                    let fix = match f.guard {
                        Some(g) => format!("exclude such points with a constraint listed before this one, e.g. `{g}`"),
                        None => "constrain the parameters so it stays in range".to_string(),
                    };
                    return Err(syn::Error::new_spanned(
                        f.source,
                        format!("{} at {}; {fix}", f.message, point_text(params, &point)),
                    ));
                }
            }
        }
        if ok {
            out.push(point.clone());
        }
        // odometer, last parameter fastest
        let mut d = params.len();
        loop {
            if d == 0 {
                if let Some(i) = passed.iter().position(|&n| n == 0) {
                    return Err(syn::Error::new_spanned(
                        &constraints[i].node.source,
                        format!(
                            "no config satisfies the constraints: none is left after `{}`; \
                             relax it or widen the parameter values",
                            constraints[i].text
                        ),
                    ));
                }
                return Ok(out);
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < params[d].values.len() {
                point[d] = params[d].values[idx[d]];
                break;
            }
            idx[d] = 0;
            point[d] = params[d].values[0];
        }
    }
}
