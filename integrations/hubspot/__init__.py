"""HubSpot behind the CRM port: ``activities.HubSpotCrm`` and the webhook verifier."""
