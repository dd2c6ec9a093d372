"""Render a Plan into a deployment folder from the jinja2 templates in templates/."""
