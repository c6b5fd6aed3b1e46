"""An example third-party provisioner for kaito (see ``plugin``)."""
