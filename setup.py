"""Package list for setuptools (the metadata is in pyproject.toml).

migrations/ stays at the top of the checkout, where alembic and reviewers expect it, and ships
inside the wheel as `service.migrations`: pyproject's package discovery cannot map a directory to
a package of another name, so the list is built here.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["service", "service.*", "cli", "cli.*"]),
        "service.migrations",
        "service.migrations.versions",
    ],
    package_dir={"service.migrations": "migrations"},
)
