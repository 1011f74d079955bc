"""Updates (format, hash), aggregation rules, differential privacy, a local round."""
