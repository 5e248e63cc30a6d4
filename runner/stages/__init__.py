"""One module per pipeline stage, each with one entry ``run(cfg, ctx)``; the engine runs them in order.
A stage imports the libraries (core, documents, questions, retrieval, evaluation, llm, train), never another stage."""
