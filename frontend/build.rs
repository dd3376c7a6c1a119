//! Rebuilds the typed GraphQL operations whenever the committed schema or a query changes.

fn main() {
    println!("cargo:rerun-if-changed=../schema.graphql");
    println!("cargo:rerun-if-changed=queries");
}
