"""Choose and adjust: transferability scores, backbone ranking, LR finder, tuning, learning curves.

Everything here sits above `training/` (it reads cached features and calls `fit()`); nothing below
imports it. The entry points are `graftkit.rank`, `graftkit.lr_find`, `graftkit.tune` and
`graftkit.curve` (each defined in the module of the same name here); the scores live in
`graftkit.selection.transferability`. Nothing heavy is imported with the package.
"""
