"""The operator console (issue 16): server-rendered pages at ``/console`` on the admin API.

A thin adapter over :mod:`worker.console`: it reads the request, asks the domain, renders
a Jinja2 template. No JavaScript is needed to use any page, and nothing is loaded from
another origin (the stylesheet is served from here).
"""

from fastapi import APIRouter

from worker.api.console import orgs, pages, routes

router = APIRouter()
router.include_router(routes.router)
router.include_router(pages.router)
router.include_router(orgs.router)

__all__ = ["router"]
