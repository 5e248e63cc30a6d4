"""Questions and answers: facts from text, which facts to ask about, template questions, phrasings,
the checks an answer must pass and the LLM judge. Imports runner.core, runner.documents and runner.llm."""
