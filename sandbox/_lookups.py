"""Looking things up by name, alike in a live world and in a run's evidence (``sandbox.evidence``)."""

from __future__ import annotations

from typing import Any

from .errors import UnknownNameError, UnknownServiceError


class Lookups:
    """``node``, ``service`` and ``database`` by name, over ``self.nodes``, ``self.services`` and
    ``self.databases`` (dicts by name), with the same errors wherever they are asked."""

    nodes: dict[str, Any]
    services: dict[str, Any]
    databases: dict[str, Any]

    def node(self, name: str) -> Any:
        """The node called ``name``, or the only replica of the service ``name``."""
        return self._node_named(name, role="node")

    def _node_named(self, name: str, role: str) -> Any:
        node = self.nodes.get(name)
        if node is not None:
            return node
        service = self.services.get(name)
        if service is not None:
            if len(service.instances) == 1:
                return service.instances[0]
            names = [i.name for i in service.instances]
            raise UnknownNameError(
                f"{role} {name!r} is a service with {len(names)} replicas; name one of them: {names}"
            )
        raise UnknownNameError(f"no {role} named {name!r} in this world; nodes: {sorted(self.nodes)}")

    def service(self, name: str) -> Any:
        """The service called ``name``."""
        service = self.services.get(name)
        if service is None:
            raise UnknownServiceError(
                f"no service named {name!r} in this world; services: {sorted(self.services)}. "
                f"Add it with world.add_service({name!r}, create_app)"
            )
        return service

    def database(self, name: str) -> Any:
        """The storage of the database ``name``, to inspect (``.rows(table)``, ``.read(table, key)``)."""
        db = self.databases.get(name)
        if db is None:
            raise UnknownNameError(
                f"no database named {name!r} in this world; databases: {sorted(self.databases)}. "
                f"Add it with world.add_database({name!r})"
            )
        return db.store
