"""Terraform rendering and driving, and AWS helpers."""
