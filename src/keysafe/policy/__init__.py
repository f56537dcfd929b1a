"""Policies: what each agent may do, decided per request (deny > ask > allow; no match is deny)."""
