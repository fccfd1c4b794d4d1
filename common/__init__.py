"""What every package may import: text helpers and the one home-directory default.

It imports nothing from the project, so it sits below every layer (DESIGN.md).
"""
