"""Store backends of the :class:`core.shop.Shop` port: the shipped demo shop and a store API."""
