"""Studies built from the protocols: ablations, the open questions, token analyses."""
