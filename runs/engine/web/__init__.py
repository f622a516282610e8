"""The web tools: the address guard, the one HTTP door, search, and the tools themselves."""
