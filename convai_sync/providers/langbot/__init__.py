"""LangBot adapter: LLM models and the pipelines that use them."""
