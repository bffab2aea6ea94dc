"""Everything on one machine (`imagine up`): the supervisor of the parts and the embedded Redis."""
