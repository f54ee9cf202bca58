"""Analysis: scoring (filters, raw scores, lag corrections) and the consistency analyses; never
imports the simulator."""
