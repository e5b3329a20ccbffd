"""The run screen's widgets: header, task graph, agent grid and panes, conflict sidebar, batch and replay bars."""
