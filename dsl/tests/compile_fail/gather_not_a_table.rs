use tessera_dsl::gpu_template;

#[gpu_template(name = "embedding", op = embedding, label = "r{rows_per_block}_t{threads_per_row}_v{vector}")]
pub mod embedding {
    params! { rows_per_block in [1, 2], threads_per_row in [64, 128], vector in [2, 4] }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        rows h: word[input_ids][rows_per_block] threads threads_per_row vector vector;
        h = h + gamma[token_type_ids];
        store h -> y;
    }
}

fn main() {
    // Code naming the template compiles against the fallback stub: no cascading errors.
    let _: &dyn tessera_dsl::Template = &embedding::TEMPLATE;
}
