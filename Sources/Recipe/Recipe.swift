// Recipe: the recipe schema and its validation only. Every stage's settings type, its reader
// (the strict reader of the JSON module, collecting every problem with its JSON path and
// line:column) and the cross-stage checks (names, references, outputs, input files); loading
// with --set overrides, and the resolved canonical form stored in checkpoints and hashed into
// fingerprints. Running stages is Pipeline's (docs/architecture.md).
