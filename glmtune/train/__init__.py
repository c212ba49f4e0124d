"""Training: the recipe, its precision policy, data preparation and callbacks."""
