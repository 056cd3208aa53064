//! Load balancer registration (one file per registrar behind one trait).
