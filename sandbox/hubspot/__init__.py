"""HubSpot CRM v3/v4 emulator: ``app.create_app`` serves it (objects, properties, associations with
labels, search, batch reads, HubSpot's error shapes) and delivers signed ``deal.propertyChange``
webhooks (``webhooks``)."""
