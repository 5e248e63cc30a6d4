"""The contract every part shares: the typed config schema, the stage contract, each stage's declared
files, the content cache, paths, errors, JSON lines and model references. Imports nothing above it, except
that the schema's resolvers read the configured documents (runner.documents) and template kinds (runner.questions)."""
