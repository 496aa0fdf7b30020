//! The connection gate both the atomic server and the negotiated relay put in front of
//! their message handlers.
