//! tessera-macros: `#[gpu_template]` (placeholder until the macro lands).
use proc_macro::TokenStream;

#[proc_macro_attribute]
pub fn gpu_template(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
