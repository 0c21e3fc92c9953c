"""Terraform root modules and driving, and AWS helpers."""
