"""Renderers turn a Plan (or an apply report) into text for people and tools."""
