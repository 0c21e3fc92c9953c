"""``gridctl ui``: a read-only web view of what ``gridctl status`` sees (SPEC section 12)."""
