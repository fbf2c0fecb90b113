"""``mbo-campaign``: a wet-lab campaign of SEIKO rounds kept in one directory between plates.

- :mod:`~mbo.active.campaign.settings`: the settings, composed from the ``campaign`` config at init;
- :mod:`~mbo.active.campaign.store`: the directory's files, their checks, checksums and lock;
- :mod:`~mbo.active.campaign.commands`: init, suggest, ingest, status, simulate;
- :mod:`~mbo.active.campaign.cli`: the command line.
"""

from mbo.active.campaign.cli import main
from mbo.active.campaign.commands import TASKS, build_task, ingest, init, simulate, status, suggest
from mbo.active.campaign.settings import load_settings
from mbo.active.campaign.store import Campaign, CampaignError, open_campaign

__all__ = ["TASKS", "Campaign", "CampaignError", "build_task", "ingest", "init", "load_settings", "main",
           "open_campaign", "simulate", "status", "suggest"]
