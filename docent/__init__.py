"""docent: question answering over documentation (common types, settings, storage, CLI)."""
