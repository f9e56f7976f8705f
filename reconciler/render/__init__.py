"""Renderers: one pure module per plan format (text, json, markdown). Never imports api or state."""
