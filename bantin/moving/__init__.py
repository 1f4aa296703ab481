"""Moving in and out: imports from an old portal (WordPress, a feed), export and restore of a
whole site, and the old links that keep working (see README, "Moving from an old portal")."""
