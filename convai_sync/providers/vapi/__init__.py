"""Vapi adapter: custom-LLM credentials and the assistants that use them."""
