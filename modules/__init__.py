"""The Terraform modules, shipped as package data so an installed gridctl can find them."""
