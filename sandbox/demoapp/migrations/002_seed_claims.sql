-- A few claims so that a fresh app has something to show (and a backup something to hold).
INSERT INTO claims (id, title, status) VALUES
    (1, 'Water damage in the kitchen', 'open'),
    (2, 'Cracked windscreen', 'approved'),
    (3, 'Lost luggage', 'rejected');
