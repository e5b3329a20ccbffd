"""The run screen's widgets: header, task graph, agent panes, conflict sidebar, batch bar."""
