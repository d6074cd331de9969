# Built-in target definitions, installed as package data (edgekit.builtin_targets).
