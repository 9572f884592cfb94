"""The three DFDC seed systems as objects: ``RECIPES["selim"]`` and so on.

A neutral module beside the engine and below the jobs (extract, train, infer): each
``recipes/<name>.py`` holds what makes that system itself, so the jobs ask the recipe
instead of comparing its name.
"""
from __future__ import annotations

from dfdc_fast.recipes import medics, ntech, selim
from dfdc_fast.recipes.base import PublishedWeights, Recipe

RECIPES: dict[str, Recipe] = {r.name: r for r in (medics.RECIPE, selim.RECIPE, ntech.RECIPE)}


def get_recipe(recipe: "str | Recipe") -> Recipe:
    """The recipe object of a name (a Recipe passes through)."""
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except KeyError:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}") from None


__all__ = ["RECIPES", "Recipe", "PublishedWeights", "get_recipe"]
