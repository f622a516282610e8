"""The agent: one step attempt's loop, its model turns, event sink and the model backends."""
