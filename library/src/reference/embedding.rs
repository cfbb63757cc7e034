//! The embedding reference: one token's row of
//! `LN(word[input_ids[t]] + position[position_ids[t]] + token_type[token_type_ids[t]]) · gamma + beta`
//! in f64 (population variance, eps inside the square root, as layernorm).

use crate::operands::OpInputs;
use tessera_dsl::EmbeddingProblem;

/// Row `token` of the output (`hidden` values); `None` if an id is missing or out of its
/// table (the kernel's contract is that none is).
pub fn embedding_row(p: &EmbeddingProblem, x: &OpInputs, token: u64) -> Option<Vec<f64>> {
    let hidden = p.hidden as usize;
    let id = |name: &str, rows: u64| -> Option<usize> {
        let v = *x.ints(name)?.get(usize::try_from(token).ok()?)?;
        let v = u64::try_from(v).ok().filter(|&v| v < rows)?;
        usize::try_from(v).ok()
    };
    let word = id("input_ids", p.vocab)? * hidden;
    let kind = id("token_type_ids", p.types)? * hidden;
    let pos = id("position_ids", p.positions)? * hidden;
    let table =
        |name: &str, at: usize| -> Option<f64> { x.values(name).get(at).map(|&v| f64::from(v)) };
    let h = (0..hidden)
        .map(|j| {
            Some(
                table("word", word + j)?
                    + table("position", pos + j)?
                    + table("token_type", kind + j)?,
            )
        })
        .collect::<Option<Vec<f64>>>()?;
    let mean = h.iter().sum::<f64>() / hidden as f64;
    let var = h.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / hidden as f64;
    let rstd = 1.0 / (var + f64::from(x.f32_arg("eps"))).sqrt();
    (0..hidden)
        .map(|j| Some((h[j] - mean) * rstd * table("gamma", j)? + table("beta", j)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operands::Slot;
    use tessera_dsl::Problem;

    fn small() -> EmbeddingProblem {
        let mut p = EmbeddingProblem::new(12, 64, 4);
        (p.vocab, p.positions, p.types) = (20, 8, 2);
        p
    }

    #[test]
    fn sums_the_three_rows_then_normalizes() {
        let p = small();
        let mut x = OpInputs::random(&Problem::Embedding(p.clone()), 7).unwrap();
        // gamma = 1, beta = 0: the output has mean 0 and variance ~1
        for name in ["gamma", "beta"] {
            let v = if name == "gamma" { 1.0 } else { 0.0 };
            x.tensor_mut(name)
                .unwrap()
                .values
                .iter_mut()
                .for_each(|g| *g = v);
        }
        let y = embedding_row(&p, &x, 6).unwrap();
        let mean = y.iter().sum::<f64>() / 64.0;
        let var = y.iter().map(|v| v * v).sum::<f64>() / 64.0;
        assert!(
            mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
        // token 6 sits at the position its position id names: changing that position row
        // changes it, another row does not
        let pos = x.ints("position_ids").unwrap()[6] as usize;
        let other = (pos + 1) % 4;
        let before = embedding_row(&p, &x, 6).unwrap();
        x.tensor_mut("position").unwrap().values[other * 64] += 3.0;
        assert_eq!(embedding_row(&p, &x, 6).unwrap(), before);
        x.tensor_mut("position").unwrap().values[pos * 64 + 5] += 3.0;
        assert_ne!(embedding_row(&p, &x, 6).unwrap(), before);
        // the word row is the one input_ids names
        let w = x.ints("input_ids").unwrap()[6] as usize;
        let again = embedding_row(&p, &x, 6).unwrap();
        x.tensor_mut("word").unwrap().values[w * 64 + 9] += 3.0;
        assert_ne!(embedding_row(&p, &x, 6).unwrap(), again);
    }

    #[test]
    fn out_of_range_ids_have_no_reference() {
        let p = small();
        let mut x = OpInputs::random(&Problem::Embedding(p.clone()), 8).unwrap();
        for (name, slot) in &mut x.slots {
            if let (&mut "input_ids", Slot::Ints(ids)) = (name, slot) {
                ids[3] = 20;
            }
        }
        assert!(embedding_row(&p, &x, 3).is_none());
        assert!(embedding_row(&p, &x, 2).is_some());
    }
}
