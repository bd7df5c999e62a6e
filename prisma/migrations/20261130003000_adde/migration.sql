-- Account-driven device enrollment (issue 19): a team enrolls either personal devices (user enrollment,
-- discovery Version mdm-byod, profile EnrollmentMode BYOD) or organisation-owned ones (device
-- enrollment, mdm-adde, ADDE). A device-enrolled device is identified by its UDID, not an EnrollmentID,
-- and reports its serial number.
ALTER TABLE teams ADD COLUMN enrollment_type text NOT NULL DEFAULT 'user';
ALTER TABLE teams ADD CONSTRAINT teams_enrollment_type_check CHECK (enrollment_type IN ('user', 'device'));

ALTER TABLE enrollment_profiles ADD COLUMN access_rights integer;

ALTER TABLE mdm_enrollments ADD COLUMN enrollment_type text NOT NULL DEFAULT 'user';
ALTER TABLE mdm_enrollments ADD CONSTRAINT mdm_enrollments_enrollment_type_check CHECK (enrollment_type IN ('user', 'device'));
ALTER TABLE mdm_enrollments ADD COLUMN udid text;
ALTER TABLE mdm_enrollments ADD COLUMN serial_number text;
CREATE INDEX mdm_enrollments_serial_number_idx ON mdm_enrollments (serial_number) WHERE serial_number IS NOT NULL;
