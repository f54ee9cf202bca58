"""Design: what a study is. The protocol schema, the trial-table contract."""
