"""HAMR's pieces as pure functions and small modules; :mod:`hamr.algorithm.method` composes them."""
