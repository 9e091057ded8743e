-- Security levels. `attendances.security_option` becomes the original system's
-- integer: 1 code, 2 code and place, 3 rotating code and place. Every session stored so far
-- used the static code ("code"), which is level 1.
ALTER TABLE attendances ALTER COLUMN security_option DROP DEFAULT;
ALTER TABLE attendances ALTER COLUMN security_option TYPE smallint
    USING (CASE WHEN security_option IN ('1', '2', '3') THEN security_option::smallint ELSE 1 END);
ALTER TABLE attendances ALTER COLUMN security_option SET DEFAULT 1;
ALTER TABLE attendances ADD CONSTRAINT attendances_security_option_check
    CHECK (security_option IN (1, 2, 3));
