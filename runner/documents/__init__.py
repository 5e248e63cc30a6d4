"""Reading documents: which files are named, PDF text and headings, text repair, and the structured
records (option tables, key lists) found in them. Imports runner.core only."""
