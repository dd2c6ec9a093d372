"""The planner: model spec + inventory + profiles -> a frozen Plan."""
