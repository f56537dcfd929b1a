"""Use cases: one function per thing a person or agent does. Surfaces call these and nothing
below."""
