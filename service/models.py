"""Every ORM model imported in one place, so alembic sees the whole schema."""

from service.audit.models import AuditEntry
from service.db import Base
from service.keys.models import ApiKey
from service.owners.models import OwnerLimits
from service.usage.models import ApiKeyUsage

metadata = Base.metadata

__all__ = ["ApiKey", "ApiKeyUsage", "AuditEntry", "OwnerLimits", "metadata"]
