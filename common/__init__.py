"""What every package may import: errors by category, the scripts Chinese text is cut
and detected by, row ids and the one home-directory default.

It imports nothing from the project, so it sits below every layer (DESIGN.md).
"""
