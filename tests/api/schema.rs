//! The committed `schema.graphql` is the server's schema.

use gradelab_tests::workspace_root;

#[test]
fn committed_schema_matches_the_server() {
    let committed =
        std::fs::read_to_string(workspace_root().join("schema.graphql")).unwrap_or_default();
    let current = gradelab::graphql::sdl();
    assert!(
        committed == current,
        "schema.graphql is stale: run `./gradelab export-schema` and commit the result"
    );
}
