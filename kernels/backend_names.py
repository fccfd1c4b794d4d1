"""The attention backends' names, without torch: the CLI's options list them."""

CHOICES = ("triton", "cpu", "reference")
